"""The read-only web viewer (``archiver-db serve``): pages over the archive for the people whose
history it is. May import ``db`` and ``core``; not the pipeline, the sources or the settings
(the command line hands it explicit values).
"""
