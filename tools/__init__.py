"""The repository's harness: start a step's server, a private Redis, wait for things, and know
the version tracks. `make run`, the tests and the benchmark all use these modules; nothing in a
step directory imports them."""
