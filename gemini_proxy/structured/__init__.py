"""Structured output: JSON Schema validation (validator.py) and its enforcement with one corrective retry (enforce.py).

It sits low (below config, which compiles task schemas with validator.py): enforce.py is handed
the attempt loop as a function and never imports it.
"""
