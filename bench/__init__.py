"""The performance harness: `aevatar-sandbox bench` (or `make bench`). See bench/README.md."""
