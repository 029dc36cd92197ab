"""Browser tests: real Chromium driving the lessons' widgets (see conftest.py)."""
