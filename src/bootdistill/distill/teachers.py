"""The teacher sources `distill.teacher` can name, and loading one: a new source is one TeacherSource subclass
(source.py) plus one entry in SOURCES."""

from __future__ import annotations

from .hf_teacher import HFTeacher
from .source import StudentSide, TeacherSource, parse_teacher_spec
from .teacher import CachedTeacher, LiveTeacher

SOURCES: dict[str, type[TeacherSource]] = {"checkpoint": LiveTeacher, "cache": CachedTeacher, "hf": HFTeacher}


def load_teacher(spec: str, side: StudentSide) -> TeacherSource:
    """The teacher source named by distill.teacher: hf:PATH, a cache directory, or a bootdistill run/checkpoint."""
    parsed = parse_teacher_spec(spec)
    return SOURCES[parsed.kind](parsed.path, side)
