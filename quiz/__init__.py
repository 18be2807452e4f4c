"""The course's interview quiz (``python -m quiz``)."""
