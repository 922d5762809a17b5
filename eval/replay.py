#!/usr/bin/env python3
"""The shared harness's replay.py with Starling's own mutation families.

Same command line as ``$STARLING_SHARED/eval/replay.py`` (see its README):
this only installs the families of ``families.py`` into the shared
``mutate.FAMILIES`` first, so the ``mutation`` and ``poison`` scenarios draw
variants from the shared families *and* ours, and ``--only`` accepts both.

    python3 eval/replay.py mutation --adapter 'CMD ...' [--only synonyms,misspell] ...
"""

import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import families  # noqa: E402  (puts the shared eval directory on sys.path)

if __name__ == "__main__":
    families.install()
    sys.exit(families.load_shared_replay().main())
