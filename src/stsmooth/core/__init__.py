"""The smoothing core: how the teacher is made from the student.

The subject of the library, importing only torch and numpy:

- ``smoothing``: the rule, Eq. 3 of paper 000 (:func:`~stsmooth.core.smoothing.smooth_`).
- ``draws``: how the preserved units are drawn.
- ``teacher``: :class:`~stsmooth.core.teacher.Teacher`, the rule applied to a module.
- ``norm``: what the teacher's BatchNorm does (EMAN, paper 003).
- ``schedules``: m and p as functions of the global step.
- ``distributed``: the few collectives the core and the training loop need.
"""
