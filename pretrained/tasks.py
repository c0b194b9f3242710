"""No background work: uploads and copies of a snapshot are quick, and reading a header needs no worker."""
