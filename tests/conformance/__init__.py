"""Conformance: the interpreter's own ``test.test_asyncio`` run against casyncio.

The tests are imported from the installed interpreter at run time, never
copied.  Each suite (registered in ``suites.py``, one line each) is one
module of test.test_asyncio, run in its own child process with casyncio made
asyncio's default loop (``harness.make_casyncio_the_default``, checked test
by test by ``harness.LoopCensus``):

* whole modules (test_locks, test_queues, ..., test_streams), whose loops
  come from the policy; ``adapters.py`` swaps the hand-built stock loop of
  test_pep492 and test_runners for a casyncio one;
* CPython's per-implementation test classes rebuilt for casyncio
  (``casyncio_cases.py``): the Future and Task mixins with casyncio's types,
  paired with asyncio's own ``_CFuture``/``_PyFuture``/``_CTask``/``_PyTask``
  as CPython pairs its C and Python ones, and the per-selector loop classes
  (test_events' SelectEventLoopTests, test_sock_lowlevel, test_sendfile...)
  with a casyncio loop, once per poller.

Tests that cannot apply yet or ever are *excluded* with a reason
(``expected_failures.EXCLUDED`` for stock-asyncio private details, and the
rule of ``harness.NeedsRule`` for loop methods casyncio lacks); known
casyncio bugs may be *expected failures*, one reason per test
(``expected_failures.EXPECTED_FAILURES``).  An expected failure that passes,
or an entry that matches no test, fails the run, so the lists only shrink;
so does a suite that runs no test or makes no casyncio loop, a test that
gets a stock loop, and a crash (the suite is rerun without the crashing
test, so the other results still show).  A test with a race of its own,
which fails now and then on any loop (``expected_failures.RACY``, one reason
per test), is run once more when it fails and counts by that run; the rerun
is reported.  ``test_harness.py`` checks that each of these failures really
fails.

Commands (from the repository root)::

    python -m tests.conformance                 # every suite, normal mode
    python -m tests.conformance --debug         # with PYTHONASYNCIODEBUG=1
    python -m tests.conformance --both -j2      # both modes, two processes
    python -m tests.conformance test_locks -v   # one suite, every test's outcome
    python -m tests.conformance --list test_events   # what runs, what is excluded and why
    pytest tests/conformance                    # one pytest test per suite and mode

Environment: ``CASYNCIO_POLLER=poll`` runs the whole-module suites on the
poll backend; ``CASYNCIO_CONFORMANCE_TIMEOUT`` (seconds per suite, 240) and
``CASYNCIO_CONFORMANCE_TEST_TIMEOUT`` (per test, 60) bound hangs.
"""
