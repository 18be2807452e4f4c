"""The classroom: grading a class's notebooks, stage by stage (as nbgrader's pipeline reads).

=================  ==========================================================================================
``discover``       which notebooks are submissions, and whose
``sandbox``        bubblewrap: what a submission can see (a read-only system, one private scratch folder)
``zygote``         the pre-loaded process in each sandbox that forks one grading process per submission
``worker``         the grading process: the notebook's definitions, the exercises' cases (learner code runs here)
``protocol``       the files and messages between the grader and those processes, as named constants
``runner``         one submission through a sandbox: copy in, run, retry after a crash, read results back
``judge``          scores, statuses and the student's feedback, judged outside the sandbox
``reference_use``  a graded function that is, or calls, kdcore's own reference gets no credit
``journal``        results appended as they are judged; ``--resume`` after an interruption
``gradebook``      one row per student: terminal table, CSV
``lms``            Canvas and Moodle gradebook import files
``feedback``       one Markdown file per student
``report``         the class report: pass rates, score distributions, misconceptions ranked
``batch``          the stages put together for a batch
``cli``            ``python -m kdcore.grade``
``catalogue``      the exercises and the judge, imported from the checking package in one place
=================  ==========================================================================================
"""
