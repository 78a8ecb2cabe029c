"""Tests of the pure parts of the benchmark scripts (bench/)."""
