import os

# Silence progress bars and use a non-interactive plotting backend in every test and notebook run.
os.environ.setdefault("KDCORE_PROGRESS", "0")
os.environ.setdefault("MPLBACKEND", "Agg")
