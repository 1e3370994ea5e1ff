"""The API's handlers, one module per endpoint family; what they share is gemini_proxy/http/flow.py."""
