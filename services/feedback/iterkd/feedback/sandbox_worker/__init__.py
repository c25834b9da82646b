"""The sandbox worker: started once by :class:`iterkd.feedback.sandbox.SandboxPool`, forks per answer.

Run with ``python -I`` and a scrubbed environment by :data:`LAUNCH` (this package put first on
``sys.path`` under the name ``sandbox_worker``); it imports only the standard library and its own
modules, so it needs nothing from the caller's ``sys.path``. Modules by job:

* :mod:`.kernel` - system calls (clone, unshare, mount, prctl, capabilities)
* :mod:`.protocol` - the pool <-> worker wire protocol
* :mod:`.isolation` - one-time setup: namespaces, run uid, environment, limits
* :mod:`.languages` - the toolchains of the six languages
* :mod:`.scratch` - as root, the answers' private /tmp: one tmpfs, kept while answers leave no trace
* :mod:`.spawn` - the per-answer plan record, the clone and the runner/supervisor
* :mod:`.reap` - killing and reaping what an answer left behind
* :mod:`.verdict` - the verdict from the exit status and the report pipe
* :mod:`.main` - the worker's request loop
"""

import os

PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# ``python -I -c LAUNCH FD CONFIG_JSON``
LAUNCH = ("import sys; sys.path.insert(0, sys.argv[1]); del sys.argv[1]; "
          "from sandbox_worker.main import main; main()")
