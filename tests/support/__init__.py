"""Helpers shared by the test suites: databases, fakes."""
