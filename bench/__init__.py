"""The benchmark (issue #6): `.venv/bin/python bench/run.py`, see bench/README.md."""
