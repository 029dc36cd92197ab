"""pytest configuration shared by the unit tests and nbval."""


def pytest_collection_modifyitems(items):
    # nbval waits only 5 s for output that arrives after a cell finishes (widgets, threads).
    for item in items:
        if type(item).__name__ == "IPyNbCell":
            item.output_timeout = 30
