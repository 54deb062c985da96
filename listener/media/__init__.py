"""Media archiving, off the text path: detection and planning, Synapse's media metadata and the
HTTP fallback, the archiver and its catch-up, the content-addressed blob stores (local copy and
group commit, Supabase Storage) and EncryptedFile decryption. May import ``ops``, ``sources``,
``sinks``, ``schema``, ``db`` and ``core``; not ``flow``.
"""
