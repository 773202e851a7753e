"""``python -m amnlib ...``: the same command line as ``amnlib ...`` (see :mod:`amnlib.cli`)."""

from amnlib.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
