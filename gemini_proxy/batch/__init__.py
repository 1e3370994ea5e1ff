"""The OpenAI Batch API run on Gemini's Batch API (issue 22): the pure core and the transport.

- :mod:`.openai_files`: the client's JSONL in (validation, OpenAI's ``errors`` shape) and the
  output / error file lines out.
- :mod:`.gemini_jobs`: lines grouped into one Gemini job per resolved model, the create bodies,
  Gemini states and results mapped back to OpenAI's by our own per-line key, batch-price cost.
- :mod:`.gemini_client`: the thin async transport (batches, resumable upload, download).
- :mod:`.store`: files and batch records on disk (``[batch] dir``), and the poller's lease.
- :mod:`.rows`: a batch's result rows per job, split into the output and error files.

Nothing here knows the server: endpoints, routing, polling and accounting are the http layer's
(gemini_proxy/http/batch_create.py, batch_poll.py, batch_local.py, handlers/files.py, batches.py).
"""
