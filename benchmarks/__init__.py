"""`make bench`: each bench_*.py module's main() writes bench-results/<name>.json."""
