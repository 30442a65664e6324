"""Run a command and print [wall seconds, peak RSS MiB, exit code] as JSON.

A separate, tiny process on purpose: a child's peak RSS (ru_maxrss) starts from the memory
of whatever process spawned it (it is shared until exec), so the spawner must be small.
Usage: python3 measure_process.py STDOUT_FILE COMMAND...
"""

import json
import os
import sys
import time

output, command = sys.argv[1], sys.argv[2:]
actions = [(os.POSIX_SPAWN_OPEN, 1, output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
           (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)]
started = time.perf_counter()
pid = os.posix_spawn(command[0], command, os.environ, file_actions=actions)
_, status, usage = os.wait4(pid, 0)
print(json.dumps([time.perf_counter() - started, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)]))
