"""Network sync: instrument-file readers, refits, and (later) the central database."""
