"""Maintenance tools of the collection: the classroom builds (`tools.classroom`), re-executing
notebooks, and the wheelhouse for air-gapped machines. Importable so that tests use `tools.classroom`."""
