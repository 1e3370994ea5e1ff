"""The OpenAI Batch API run on Gemini's Batch API (issue 22): the pure core and the transport.

- :mod:`.openai_files`: the client's JSONL in (validation, OpenAI's ``errors`` shape) and the
  output / error file lines out.
- :mod:`.gemini_jobs`: lines grouped into one Gemini job per resolved model, the create bodies,
  Gemini states and results mapped back to OpenAI's by our own per-line key, batch-price cost.
- :mod:`.gemini_client`: the thin async transport (batches, resumable upload, download).

Nothing here talks to the server's state: endpoints, storage, polling and budgets are the
wiring's job (issue 22, phase 2).
"""
