"""Teaching aids: worked cells, notes and errata of the course documents, notebook exercises."""
