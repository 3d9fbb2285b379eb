"""A pass's textual inversion embeddings (issue 11), loaded into its pipeline's tokenizer and
text encoder with the pipeline's own ``load_textual_inversion``.

Planning lists the embeddings each image's prompts use in its ``ti_hashes`` (a part of the
batch group, so one pass has one set). The pipeline then holds exactly that set: an embedding
stays loaded while passes use it, and one they do not is unloaded first, so a pass's pixels
never depend on what earlier passes loaded (unloading restores the text encoder's weights
exactly).

Each token is ``<name>``, lower-cased (CLIP lower-cases text), written into the prompts of
the pass where they use the name (``scheduler.embeddings.spelled_as_loaded``); a multi-vector
embedding adds ``<name>_1``, ``<name>_2``, ... after it, which diffusers'
``maybe_convert_prompt`` spells out in the prompt. SDXL embeddings hold a ``clip_l`` and a
``clip_g`` tensor, one per text encoder. The file is found by name in the embedding folder
here and must have the hash it was planned with.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sdfarm.errors import ModelError, one_line
from sdfarm.modelref import cached_sha256
from sdfarm.scheduler.embeddings import (
    EMBEDDING_SUFFIX,
    SHORT_HASH,
    EmbeddingFolder,
    embedding_token,
    infotext_name,
    parse_ti_hashes,
    spelled_as_loaded,
)
from sdfarm.spec import RenderSpec
from sdfarm.worker.builtin import quiet_libraries


class EmbeddingSet:
    """The embeddings each cached pipeline holds, set to a pass's before it renders."""

    def __init__(self, folder: Path, model_dir: Path) -> None:
        self.folder, self.model_dir = folder, model_dir
        #: By pipeline: name -> (hash, the (tokenizer, text encoder, tokens) it added).
        self._loaded: dict[int, dict[str, tuple[str, list[tuple[Any, Any, list[str]]]]]] = {}
        #: How many times each embedding was loaded.
        self.loads: Counter[str] = Counter()
        #: The file name (stem) of each name loaded.
        self._stems: dict[str, str] = {}

    def use(self, pipe: Any, specs: Sequence[RenderSpec]) -> list[RenderSpec]:
        """Load the pass's embeddings into ``pipe`` (unloading the others); ``specs`` with the
        embeddings' names in their prompts spelled as their tokens."""
        wanted = dict(parse_ti_hashes(specs[0].ti_hashes))
        loaded = self._loaded.setdefault(id(pipe), {})
        for name in [n for n, (digest, _) in loaded.items() if wanted.get(n) != digest]:
            for tokenizer, encoder, tokens in loaded.pop(name)[1]:
                pipe.unload_textual_inversion(tokens=tokens, tokenizer=tokenizer,
                                              text_encoder=encoder)
        for name, digest in wanted.items():
            if name not in loaded:
                with quiet_libraries():  # transformers tells how it initializes new rows
                    loaded[name] = (digest, self._load(pipe, name, digest, specs[0].family))
                self.loads[name] += 1
        if not wanted:
            return list(specs)
        # As the files name them: TI hashes leave ":" and "," out of a name.
        stems = [self._stems.get(n, n) for n in wanted]
        return [s.replace(prompt=spelled_as_loaded(s.prompt, stems),
                          negative_prompt=spelled_as_loaded(s.negative_prompt, stems))
                for s in specs]

    def forget(self, pipe: Any) -> None:
        self._loaded.pop(id(pipe), None)

    def _load(self, pipe: Any, name: str, digest: str,
              family: str) -> list[tuple[Any, Any, list[str]]]:
        from safetensors.torch import load_file

        path = self._file(name, digest)
        self._stems[name] = path.stem
        try:
            tensors = load_file(str(path))
        except Exception as exc:
            raise ModelError(f"cannot read embedding {str(path)!r}: "
                             f"{one_line(exc, named=False)}") from exc
        token = embedding_token(path.stem)
        if family == "sdxl":
            targets = [("clip_l", pipe.tokenizer, pipe.text_encoder),
                       ("clip_g", pipe.tokenizer_2, pipe.text_encoder_2)]
            if not {"clip_l", "clip_g"} <= set(tensors):
                raise ModelError(f"embedding {str(path)!r} is not an SDXL embedding (no "
                                 "clip_l and clip_g tensors)")
        else:
            if len(tensors) != 1:
                raise ModelError(f"embedding {str(path)!r} holds {len(tensors)} tensors; an "
                                 f"embedding for this model holds one")
            targets = [(next(iter(tensors)), pipe.tokenizer, pipe.text_encoder)]
        added: list[tuple[Any, Any, list[str]]] = []
        for key, tokenizer, encoder in targets:
            before = set(tokenizer.added_tokens_encoder)
            try:
                pipe.load_textual_inversion(tensors[key], token=token, tokenizer=tokenizer,
                                            text_encoder=encoder)
            except ValueError as exc:  # a width that is not the text encoder's
                for done_tokenizer, done_encoder, tokens in added:  # SDXL: the first encoder's
                    pipe.unload_textual_inversion(tokens=tokens, tokenizer=done_tokenizer,
                                                  text_encoder=done_encoder)
                raise ModelError(f"embedding {str(path)!r} ({key}) cannot be loaded into the "
                                 f"model's text encoder: {one_line(exc, named=False)}") from exc
            added.append((tokenizer, encoder,
                          sorted(set(tokenizer.added_tokens_encoder) - before)))
            _pool_at_end_of_text(encoder, tokenizer)
        return added

    def _file(self, name: str, digest: str) -> Path:
        folder = EmbeddingFolder.scan(self.folder)
        paths = [p for paths in folder.by_pieces.values() for p in paths
                 if p.suffix.lower() == EMBEDDING_SUFFIX and infotext_name(p.stem) == name]
        for path in paths:
            try:
                if cached_sha256(path, self.model_dir)[:SHORT_HASH] == digest:
                    return path
            except OSError:
                continue
        if paths:
            raise ModelError(f"embedding {name!r} ({str(paths[0])!r}) has another hash here "
                             f"than the job was planned with ({digest}): the file changed; "
                             "plan the job again")
        raise ModelError(f"embedding {name!r} is not in {str(self.folder)!r} on this machine "
                         "(SDFARM_EMBEDDING_DIR); copy it there")


def _pool_at_end_of_text(encoder: Any, tokenizer: Any) -> None:
    """Make the encoder pool at the end-of-text token, not at the highest token id.

    Configs written before transformers#24773 (SDXL's second encoder on the hub says
    ``eos_token_id: 2``) make CLIP take its pooled output at the highest token id, which is the
    end of text only while no token was added; with an embedding's token it would be the
    embedding's position. Pointing it at the real end-of-text id changes nothing for prompts
    without added tokens (the end of text is then the highest id) and pools SDXL's prompt
    vector where it belongs with them."""
    model = getattr(encoder, "text_model", encoder)
    eos = getattr(tokenizer, "eos_token_id", None)
    if getattr(model, "eos_token_id", None) == 2 and eos is not None and eos != 2:
        model.eos_token_id = eos
