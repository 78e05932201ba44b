"""mbc-cds: CDS Hooks service for palliative and supportive care in metastatic breast cancer."""

__version__ = "0.1.0"
