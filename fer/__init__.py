"""fer: facial-expression recognition on 48x48 faces (FER2013 and challenge-style data)."""

__version__ = "0.1.0"
