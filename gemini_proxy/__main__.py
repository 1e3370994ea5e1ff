"""``python -m gemini_proxy``: the same command line as the ``gemini-proxy`` script."""

from gemini_proxy.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
