"""PNG generation metadata: AUTOMATIC1111's ``parameters`` infotext (written and read), sdfarm's
own JSON chunk, and the PNG text chunks that carry them. Pure: the standard library only."""
