"""The file and message protocol between the grader and its grading processes, as named constants.

The grader (``kdcore.classroom.runner``, trusted) gives each submission a private scratch folder. Inside
the sandbox that folder is mounted at ``SANDBOX_SCRATCH``; a grading process (``kdcore.classroom.worker``,
running learner code) reads the submission copy from it and writes its results there. The grader reads
them back after the process and all its children are gone, never trusting more than the data: every file
is opened without following symbolic links, size-capped, and parsed leniently.

Control messages between the grader and the pre-loaded process (``kdcore.classroom.zygote``) are JSON
lines on the zygote's stdin/stdout; a grading process never holds those pipes.
"""
from __future__ import annotations

# --- files in the scratch folder ------------------------------------------------------------------------
SUBMISSION_FILE = "submission.ipynb"  # the copy of the submission (the original never enters a sandbox)
INFO_FILE = "info.json"               # what the notebook defines, its check cells, its cell errors, or `invalid`
RUNNING_FILE = "running.txt"          # the exercise being run (tells the grader where a crash or timeout hit)
RECORD_PREFIX = "obs-"                # RECORD_PREFIX + exercise id + RECORD_SUFFIX: one record per exercise
RECORD_SUFFIX = ".pt"                 # torch.save({"observations", "error", "memory", "reference"})
DONE_FILE = "done"                    # written last by a worker that finished every exercise
STDERR_FILE = "stderr.txt"            # the grading process's stderr (read only to recognise memory errors)

#: Where the scratch folder appears inside the sandbox.
SANDBOX_SCRATCH = "/grading"

# --- exit codes of a grading process --------------------------------------------------------------------
#: A timed-out case left a thread running: grade the remaining exercises in a fresh process.
EXIT_RESTART = 75

# --- limits ---------------------------------------------------------------------------------------------
#: RLIMIT_FSIZE of a grading process: no file it writes (stderr included) may exceed this.
MAX_FILE_BYTES = 64 * 2**20
#: The grader reads at most this much of INFO_FILE, and of one record.
MAX_INFO_BYTES = 2 * 2**20
MAX_RECORD_BYTES = 256 * 2**20

# --- zygote control messages (JSON objects, one per line) -----------------------------------------------
#: zygote -> grader once torch and the checking package are imported: {"ready": pid}
MSG_READY = "ready"
#: grader -> zygote: {"run": [worker argv...], "env": {...}, "cwd": scratch path}
MSG_RUN = "run"
#: zygote -> grader once the grading process is forked: {"started": pid} (pid as the grader sees it
#: when there is no sandbox; inside one it is a pid of the sandbox's own namespace)
MSG_STARTED = "started"
#: zygote -> grader when the grading process and every process it left are gone: {"exit": code}
#: (code < 0: killed by that signal, as in subprocess)
MSG_EXIT = "exit"
#: grader -> zygote: {"quit": true}
MSG_QUIT = "quit"


def record_name(exercise_id: str) -> str:
    return f"{RECORD_PREFIX}{exercise_id}{RECORD_SUFFIX}"


def record_exercise(file_name: str) -> str | None:
    """The exercise id of a record file name, or None for any other file."""
    if file_name.startswith(RECORD_PREFIX) and file_name.endswith(RECORD_SUFFIX):
        return file_name[len(RECORD_PREFIX):-len(RECORD_SUFFIX)] or None
    return None
