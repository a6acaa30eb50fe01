"""stsmooth: how the teacher is made from the student.

Teacher smoothing rules for student-teacher learning: temporal moving average
(TMA/EMA), Spatial Ensemble (SE), Spatial-Temporal Smoothing (STS) and
Exponential Moving Average Normalization (EMAN).
"""

from stsmooth.teacher import Teacher

__all__ = ["Teacher"]
__version__ = "0.1.0"
