"""The test suite: real servers, browsers and Redis, started through the `tools` harness."""
