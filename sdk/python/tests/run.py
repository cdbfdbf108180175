"""Runs the SDK's tests and prints a summary line in cargo's format, which scripts/test.sh
adds to the run's total."""

import sys
import unittest
from pathlib import Path

suite = unittest.defaultTestLoader.discover(str(Path(__file__).parent))
result = unittest.TextTestRunner(verbosity=1).run(suite)
failed = len(result.failures) + len(result.errors)
passed = result.testsRun - failed - len(result.skipped)
if result.skipped:
    # A skipped test hides a missing tool: count it as a failure.
    failed += len(result.skipped)
print(f"test result: {'ok' if failed == 0 else 'FAILED'}. {passed} passed; {failed} failed")
sys.exit(0 if failed == 0 else 1)
