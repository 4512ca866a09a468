"""Tests that kill mutants the other test files let survive (tests/MUTATION.md).

Each test names the mutated line it guards, so a later run can tell which survivor it was for.
"""
