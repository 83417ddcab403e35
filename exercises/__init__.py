"""Exercises: the functions at the heart of World4RL, to write yourself and check against the
project's own tests. Each file is one exercise: the real signature, the task in the paper's symbols,
and `raise NotImplementedError`. No solutions here: the reference is the stage code itself.

    python -m exercises.grade two_hot                    # grade exercises/two_hot.py
    python -m exercises.grade gae --file my_gae.py       # grade your own file
    python -m exercises.grade --list                     # the exercises, in reading order

TEACHING.md has the reading order, a lab plan and the assignments.
"""
