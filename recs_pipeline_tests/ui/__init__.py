"""Helpers of the UI test (``test_ui_browser.py``): Debian's chromium and a Dagster webserver."""
