"""stsmooth: how the teacher is made from the student.

Teacher smoothing rules for student-teacher learning: temporal moving average
(TMA/EMA), Spatial Ensemble (SE), Spatial-Temporal Smoothing (STS) and
Exponential Moving Average Normalization (EMAN).
"""

from stsmooth.core import schedules
from stsmooth.core.smoothing import module_tensors, smooth_
from stsmooth.core.teacher import Teacher

__all__ = ["Teacher", "module_tensors", "schedules", "smooth_"]
__version__ = "0.1.0"
