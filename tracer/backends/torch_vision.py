"""The real transformers ``Qwen3VLForConditionalGeneration``, traced into the same names as the NumPy engine.

Nothing of transformers is edited or copied. The image processor is transformers' own
(``Qwen2VLImageProcessorPil``, the Pillow path: torchvision is not needed) fed with the decoded RGB pixels.
The text model is hooked by ``torch_backend``'s session (same names as Qwen3); the vision tower by module
hooks, and its attention by a function registered with ``AttentionInterface`` that runs eager attention per
image segment, as the library calls it, and records the segments assembled into [H, N, N]. Both sessions
reach the attention function as keywords of the model call (``tracer_session``, ``tracer_vision``). Records
recomputed rather than captured (q/k/v split from the fused qkv, the position embedding as embed −
patch_embed, cross-image scores and the image mask) are marked ``derived``.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from tracer import TracerError
from tracer.backends import torch_backend as tb
from tracer.engine.model import Generation, Sampling, decode_loop
from tracer.engine.recorder import Recorder
from tracer.vision.config import to_hf_dict
from tracer.vision.preprocess import Patches
from tracer.vision.weights import vl_weight_shapes

ATTENTION_NAME = "qwen3_tracer_vl"


def hf_processor(model: Any) -> Any:
    """transformers' image processor with this model's numbers (the Pillow backend)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    vc = model.vision
    return Qwen2VLImageProcessorPil(
        patch_size=vc.patch_size, temporal_patch_size=vc.temporal_patch_size, merge_size=vc.spatial_merge_size,
        image_mean=list(vc.image_mean), image_std=list(vc.image_std),
        size={"shortest_edge": vc.min_pixels, "longest_edge": vc.max_pixels})


def build_model(model: Any, dtype: str, device: str) -> Any:
    """A real Qwen3VLForConditionalGeneration with these weights (or the checkpoint directory's), traced attention."""
    torch, transformers = tb.require_torch()
    register_attention()
    torch_dtype = getattr(torch, dtype)
    cls = transformers.Qwen3VLForConditionalGeneration
    with tb.quiet_library():
        if model.directory is not None:
            hf = cls.from_pretrained(str(model.directory), local_files_only=True, dtype=torch_dtype)
        else:
            config = transformers.Qwen3VLConfig(**{k: v for k, v in to_hf_dict(model.cfg, model.vision).items()
                                                   if k not in ("architectures", "model_type")})
            with torch.device("meta"):
                hf = cls(config)
            sd = {n: torch.from_numpy(np.ascontiguousarray(model.weights[n]))
                  for n in vl_weight_shapes(model.cfg, model.vision)}
            if model.cfg.tie_word_embeddings:
                sd["lm_head.weight"] = sd["model.language_model.embed_tokens.weight"]
            hf.load_state_dict(sd, strict=True, assign=True)
            text_rotary = hf.model.language_model.rotary_emb
            hf.model.language_model.rotary_emb = type(text_rotary)(config=config.text_config)
            hf.model.visual.rotary_pos_emb = type(hf.model.visual.rotary_pos_emb)(config=config.vision_config)
            if model.cfg.tie_word_embeddings:
                hf.tie_weights()
            hf = hf.to(torch_dtype)
        hf.set_attn_implementation(ATTENTION_NAME)
    return hf.to(device).eval()


def register_attention() -> None:
    """One attention function for both towers: vision modules are recorded here, text layers by torch_backend."""
    import transformers
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    tb.register_attention()
    transformers.AttentionInterface.register(ATTENTION_NAME, _attention)
    AttentionMaskInterface.register(ATTENTION_NAME, eager_mask)


def _attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, scaling: float,
               dropout: float = 0.0, **kwargs: Any) -> tuple[Any, Any]:
    session: _VisionSession | None = kwargs.get("tracer_vision")
    state = session.blocks.get(id(module)) if session is not None else None
    if state is None:  # a text decoder layer (or a call outside a trace)
        return tb._traced_attention(module, query, key, value, attention_mask, scaling, dropout, **kwargs)
    return state.segment(module, query, key, value, scaling)


class _VisionState:
    """Collects one vision block's attention segments (one per image) and records them once complete."""

    def __init__(self, session: _VisionSession, block: int):
        self.session = session
        self.block = block
        self.parts: list[tuple[Any, Any, Any, Any, Any]] = []

    def segment(self, module: Any, query: Any, key: Any, value: Any, scaling: float) -> tuple[Any, Any]:
        torch = self.session.torch
        scores = torch.matmul(query, key.transpose(2, 3)) * scaling
        probs = torch.nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
        out = torch.matmul(probs, value)
        self.parts.append((query[0], key[0], value[0], probs[0], out[0]))
        if sum(p[0].shape[1] for p in self.parts) == self.session.num_patches:
            self.record(scaling)
            self.parts = []
        return out.transpose(1, 2).contiguous(), probs

    def record(self, scaling: float) -> None:
        s, torch = self.session, self.session.torch
        n = f"vision.blocks.{self.block}.attn"
        q = torch.cat([p[0] for p in self.parts], dim=1)
        k = torch.cat([p[1] for p in self.parts], dim=1)
        many = len(self.parts) > 1
        s.rec(f"{n}.q_rope", s.np(q), f"{n}.q_proj", "vision.rope.cos", "vision.rope.sin")
        s.rec(f"{n}.k_rope", s.np(k), f"{n}.k_proj", "vision.rope.cos", "vision.rope.sin")
        scores = s.np(torch.matmul(q, k.transpose(1, 2)) * scaling)
        s.rec(f"{n}.scores", scores, f"{n}.q_rope", f"{n}.k_rope", derived=many)
        lengths = [p[0].shape[1] for p in self.parts]
        seg = np.repeat(np.arange(len(lengths)), lengths)
        mask = np.where(seg[:, None] == seg[None, :], 0, np.finfo(scores.dtype).min).astype(scores.dtype)
        s.rec(f"{n}.mask", mask, "vision.cu_seqlens", op="segment_mask", derived=True)
        s.rec(f"{n}.masked_scores", scores + mask, f"{n}.scores", f"{n}.mask", derived=True)
        probs = np.zeros_like(scores)
        context = []
        start = 0
        for (_, _, _, p, out), length in zip(self.parts, lengths):
            probs[:, start:start + length, start:start + length] = s.np(p)
            context.append(s.np(out))
            start += length
        s.rec(f"{n}.probs", probs, f"{n}.masked_scores")
        s.rec(f"{n}.context", np.concatenate(context, axis=1), f"{n}.probs", f"{n}.v_proj")


class _VisionSession:
    """Hooks on the vision tower and the placement, recording into the run's recorder."""

    def __init__(self, model: Any, hf: Any, rec: Recorder, torch: Any, num_patches: int):
        self.model, self.hf, self.rec, self.torch = model, hf, rec, torch
        self.num_patches = num_patches
        self.handles: list[Any] = []
        self.values: dict[str, np.ndarray] = {}
        self.deepstack_active = False
        self.blocks: dict[int, _VisionState] = {}  # id of each vision attention module -> its block's state
        self.last_block = f"vision.blocks.{model.vision.depth - 1}.resid_post"

    def np(self, tensor: Any) -> np.ndarray:
        t = tensor.detach()
        if t.dtype in (self.torch.bfloat16, self.torch.float16):
            t = t.float()
        return t.cpu().numpy()

    def out(self, module: Any, fn: Any) -> None:
        """Call ``fn`` with a module's output; the hook returns None, so the model is left as is."""

        def hook(_module: Any, _args: Any, output: Any) -> None:
            fn(output)

        self.handles.append(module.register_forward_hook(hook))

    def pre(self, module: Any, fn: Any, with_kwargs: bool = False) -> None:
        """Call ``fn`` with a module's first input (or its args and kwargs); the model's inputs are not changed."""

        def hook(_module: Any, args: Any) -> None:
            fn(args[0])

        def hook_kwargs(_module: Any, args: Any, kwargs: Any) -> None:
            fn(args, kwargs)

        self.handles.append(module.register_forward_pre_hook(hook_kwargs, with_kwargs=True) if with_kwargs
                            else module.register_forward_pre_hook(hook))

    def keep(self, name: str, value: np.ndarray, *inputs: str, **kw: Any) -> None:
        self.values[name] = self.rec(name, value, *inputs, **kw)

    def install(self) -> None:
        vis = self.hf.model.visual
        p = "model.visual"
        self.out(vis.patch_embed, lambda o: self.keep("vision.patch_embed", self.np(o), "vision.pixel_values",
                                                      f"{p}.patch_embed.proj.weight"))
        self.out(vis.rotary_pos_emb, lambda o: (
            self.rec("vision.rope.cos", self.np(o[0]), "vision.rope.position_ids"),
            self.rec("vision.rope.sin", self.np(o[1]), "vision.rope.position_ids")))
        self.pre(vis.rotary_pos_emb, lambda a, _k: self.rec(
            "vision.rope.position_ids", a[1].cpu().numpy().astype(np.int64).reshape(-1, 2), "vision.grid_thw"),
            with_kwargs=True)

        def on_embed(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            embed = self.np(args[0])
            self.rec("vision.pos_embed", embed - self.values["vision.patch_embed"], f"{p}.pos_embed.weight",
                     "vision.grid_thw", derived=True)
            self.rec("vision.embed", embed, "vision.patch_embed", "vision.pos_embed")
            self.rec("vision.cu_seqlens", kwargs["cu_seqlens"].cpu().numpy().astype(np.int64), "vision.grid_thw")

        self.pre(vis.blocks[0], on_embed, with_kwargs=True)
        for b, blk in enumerate(vis.blocks):
            self.install_block(b, blk)
        for j, m in enumerate(vis.deepstack_merger_list):
            self.install_merger(f"vision.deepstack.{j}", m, post=True)
        self.install_merger("vision.merger", vis.merger, post=False)
        self.install_text()

    def install_block(self, b: int, blk: Any) -> None:
        n, vc = f"vision.blocks.{b}", self.model.vision
        block_in = "vision.embed" if b == 0 else f"vision.blocks.{b - 1}.resid_post"
        self.blocks[id(blk.attn)] = _VisionState(self, b)
        self.out(blk.norm1, lambda o: self.rec(f"{n}.attn_norm", self.np(o), block_in, op="layer_norm"))

        def on_qkv(o: Any) -> None:
            qkv = self.rec(f"{n}.attn.qkv", self.np(o), f"{n}.attn_norm")
            width = qkv.shape[1] // 3
            for k, part in enumerate(("q_proj", "k_proj", "v_proj")):
                heads = qkv[:, k * width:(k + 1) * width].reshape(len(qkv), vc.num_heads, -1).transpose(1, 0, 2)
                self.rec(f"{n}.attn.{part}", np.ascontiguousarray(heads), f"{n}.attn.qkv", derived=True)

        self.out(blk.attn.qkv, on_qkv)
        self.out(blk.attn.proj, lambda o: self.rec(f"{n}.attn.o_proj", self.np(o), f"{n}.attn.context"))
        self.pre(blk.norm2, lambda x: self.rec(f"{n}.resid_mid", self.np(x), f"{n}.attn.o_proj"))
        self.out(blk.norm2, lambda o: self.rec(f"{n}.mlp_norm", self.np(o), f"{n}.resid_mid", op="layer_norm"))
        self.out(blk.mlp.linear_fc1, lambda o: self.rec(f"{n}.mlp.fc1", self.np(o), f"{n}.mlp_norm"))
        self.pre(blk.mlp.linear_fc2, lambda x: self.rec(f"{n}.mlp.act", self.np(x), f"{n}.mlp.fc1", op="gelu_tanh"))
        self.out(blk.mlp.linear_fc2, lambda o: self.rec(f"{n}.mlp.fc2", self.np(o), f"{n}.mlp.act"))
        self.out(blk, lambda o: self.rec(f"{n}.resid_post", self.np(o), f"{n}.resid_mid", f"{n}.mlp.fc2"))


    def install_merger(self, n: str, m: Any, post: bool) -> None:
        if post:
            self.pre(m.norm, lambda x: self.rec(f"{n}.merge", self.np(x), self.tap_of(n)))
            self.out(m.norm, lambda o: self.rec(f"{n}.norm", self.np(o), f"{n}.merge", op="layer_norm"))
        else:
            self.out(m.norm, lambda o: self.rec(f"{n}.norm", self.np(o), self.last_block, op="layer_norm"))
            self.pre(m.linear_fc1, lambda x: self.rec(f"{n}.merge", self.np(x), f"{n}.norm"))
        self.out(m.linear_fc1, lambda o: self.rec(f"{n}.fc1", self.np(o), f"{n}.merge"))
        self.pre(m.linear_fc2, lambda x: self.rec(f"{n}.act", self.np(x), f"{n}.fc1", op="gelu_erf"))
        self.out(m.linear_fc2, lambda o: self.rec(f"{n}.out", self.np(o), f"{n}.act"))

    def tap_of(self, n: str) -> str:
        """The vision block a DeepStack merger reads."""
        j = int(n.rsplit(".", 1)[1])
        return f"vision.blocks.{self.model.vision.deepstack_visual_indexes[j]}.resid_post"

    def install_text(self) -> None:
        lm = self.hf.model.language_model
        taps = len(self.model.vision.deepstack_visual_indexes)

        def on_text(_args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if kwargs.get("visual_pos_masks") is not None:
                self.rec("embed.spliced", self.np(kwargs["inputs_embeds"][0]), self.full("embed.out"),
                         "vision.merger.out")
            pos = kwargs.get("position_ids")
            if pos is not None:
                self.rec("rope.position_ids", pos[:, 0].cpu().numpy().astype(np.int64), self.full("tokens"))
            else:  # no image in the prompt: the library uses plain positions on all three axes
                past = kwargs["past_key_values"].get_seq_length() if kwargs.get("past_key_values") is not None else 0
                length = kwargs["inputs_embeds"].shape[1]
                self.rec("rope.position_ids", np.broadcast_to(np.arange(past, past + length), (3, length)).copy(),
                         self.full("tokens"), derived=True)
            self.deepstack_active = kwargs.get("deepstack_visual_embeds") is not None

        self.pre(lm, on_text, with_kwargs=True)
        for j in range(taps):
            module = lm.layers[j + 1] if j + 1 < len(lm.layers) else lm.norm
            self.pre(module, lambda x, j=j: self.deepstack_active and self.rec(
                f"layers.{j}.deepstack", self.np(x[0]), self.full(f"layers.{j}.resid_post"),
                f"vision.deepstack.{j}.out"))

    def full(self, name: str) -> str:
        return self.rec.prefix + name

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def preprocess(model: Any, rgb: list[np.ndarray], rec: Recorder) -> Patches:
    """transformers' image processor on the decoded images: ``vision.pixel_values`` and ``vision.grid_thw``."""
    out = hf_processor(model)(images=rgb, return_tensors="np")
    names = [f"vision.images.{k}.rgb" for k in range(len(rgb))]
    grid = rec("vision.grid_thw", np.asarray(out["image_grid_thw"]).astype(np.int64), *names, op="grid_thw")
    pixels = rec("vision.pixel_values", np.asarray(out["pixel_values"], dtype=np.float32), *names, op="patchify")
    p = model.vision.patch_size
    return Patches(pixels, grid, [im.shape[:2] for im in rgb], [(int(h) * p, int(w) * p) for _, h, w in grid])


def generate(model: Any, ids: list[int], patches: Patches | None, rec: Recorder, sampling: Sampling,
             max_new_tokens: int, stops: tuple[int, ...], dtype: str, device: str | None
             ) -> tuple[Generation, dict[str, str]]:
    """Prefill with the images, then decode with the library's DynamicCache, recording the engine's names."""
    torch, transformers = tb.require_torch()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "auto" or (device.startswith("cuda") and not torch.cuda.is_available()):
        raise TracerError.of("vision.err_device", device=device)
    hf = build_model(model, dtype, device)
    inputs: dict[str, Any] = {}
    num_patches = 0
    if patches is not None:
        num_patches = len(patches.pixel_values)
        inputs = {"pixel_values": torch.from_numpy(np.array(patches.pixel_values)).to(device, getattr(torch, dtype)),
                  "image_grid_thw": torch.from_numpy(np.array(patches.grid_thw)).to(device)}
    cache = transformers.DynamicCache(config=hf.config)
    proxy = SimpleNamespace(model=hf.model.language_model, lm_head=hf.lm_head)
    session = _VisionSession(model, hf, rec, torch, num_patches)
    session.install()
    try:
        with tb.tracing(model.cfg, proxy, rec, torch) as text, torch.no_grad():  # the text model's hooks

            def step(tokens: list[int], step_rec: Recorder) -> np.ndarray:
                text.rec = step_rec
                session.rec = step_rec
                text.ids = np.array(tokens, dtype=np.int64)
                t = torch.tensor([tokens], dtype=torch.long, device=device)
                extra = {}
                if step_rec is rec and inputs:
                    extra = dict(inputs, mm_token_type_ids=(t == model.vision.image_token_id).long())
                hf(input_ids=t, past_key_values=cache, use_cache=True, tracer_session=text, tracer_vision=session,
                   **extra)
                return text.logits

            gen = decode_loop(model.cfg, ids, rec, sampling, max_new_tokens, stops, step)
    finally:
        session.remove()
    return gen, tb.library_versions()
