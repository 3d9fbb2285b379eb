"""Generation metadata: AUTOMATIC1111's ``parameters`` infotext (written and read), sdfarm's
own JSON chunk, the containers that carry them (PNG text chunks, JPEG/WebP EXIF UserComment),
and the formats of other tools (ComfyUI, InvokeAI, NovelAI, SwarmUI, Fooocus), read.
Pure: the standard library only."""
