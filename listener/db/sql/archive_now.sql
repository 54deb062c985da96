-- archive_now: the archive database's clock (an incremental export's watermark).
SELECT now()
