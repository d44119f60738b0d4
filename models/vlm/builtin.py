"""The built-in model's definition: closed vocabulary, word-level tokenizer, architecture, template.

The built-in model is a tiny Qwen2-VL (M-RoPE) trained from scratch on the shapes world. Its
vocabulary is closed: every word the shapes-world grammar can produce (event sentences, questions,
answers) plus the system prompt and special tokens. The tokenizer is a `tokenizers` word-level
model trained offline on a corpus enumerated from that grammar, wrapped in PreTrainedTokenizerFast.

Sequence layout (training and inference alike; `streamrt.models.vlm.base` describes the protocol):
    <system> watch the shapes . say what happens and answer questions .
    <vision_start> <video_pad>*N <vision_end>  then  <silence>  |  sentence . sentence <eos>
    <user> what colour is the star ? <assistant> red <eos>

Owns the constants (special tokens, frame size, fps, chunking) and the builders; does not train
(`streamrt.models.vlm.train`) nor run the model (`streamrt.models.vlm.qwen2_vl`).
"""

from __future__ import annotations

from streamrt.models.vlm.base import PromptTemplate, StreamSettings

from streamrt.synth import COLOURS, DIRECTIONS, POSITIONS, SHAPES, SIDES
from streamrt.synth.language import NUMBERS, Mention, plural, say
from streamrt.synth.types import EVENT_KINDS, SCENE_KINDS

PAD, UNK, EOS, SILENCE = "<pad>", "<unk>", "<eos>", "<silence>"
SYSTEM, USER, ASSISTANT = "<system>", "<user>", "<assistant>"
VISION_START, VISION_END, VIDEO_PAD, IMAGE_PAD = (
    "<vision_start>",
    "<vision_end>",
    "<video_pad>",
    "<image_pad>",
)
SPECIAL_TOKENS: tuple[str, ...] = (
    PAD, UNK, EOS, SILENCE, SYSTEM, USER, ASSISTANT, VISION_START, VISION_END, VIDEO_PAD, IMAGE_PAD,
)  # fmt: skip

SYSTEM_PROMPT = "watch the shapes. say what happens and answer questions."
TEMPLATE = PromptTemplate(
    system_prompt=SYSTEM_PROMPT,
    system=SYSTEM + " {prompt}",
    user=USER + " {question} " + ASSISTANT,
    assistant_end="",
    vision_prefix=VISION_START,
    vision_suffix=VISION_END,
)
SETTINGS = StreamSettings(fps=2.0, frames_per_chunk=2, frame_size=(80, 128), max_positions=None)
"""2 fps, chunks of 2 frames (one temporal patch), 128x80 frames: 8x5 = 40 visual tokens per chunk."""

RENDER_SIZE = (180, 320)
"""(h, w) the training data is rendered at before the model's own bicubic resize, so training frames
look like decoded video frames that were downscaled (not like a native low-resolution render)."""


def corpus() -> list[str]:
    """Every sentence shape of the grammar: event sentences for all attribute combinations, every
    question template and answer word, the system prompt. The tokenizer is trained on it."""
    lines = [SYSTEM_PROMPT, "nothing. none. several.", " ".join(NUMBERS), " ".join(POSITIONS)]
    details = {
        "enter": SIDES,
        "leave": SIDES,
        "bounce": SIDES,
        "move_start": DIRECTIONS,
        "colour_change": COLOURS,
    }
    for kind in (k for k in EVENT_KINDS if k not in SCENE_KINDS):
        for colour in COLOURS:
            for shape in SHAPES:
                for d in details.get(kind, (None,)):
                    lines.append(say(Mention(kind, shape, colour, d)) + ".")
    lines += [say(Mention(k)) + "." for k in SCENE_KINDS]
    for shape in SHAPES:
        lines += [f"what colour is the {shape}?", f"how many {plural(shape)} are there?"]
    for colour in COLOURS:
        lines += [f"what shape is the {colour} object?", f"how many {colour} objects are there?"]
        lines += [f"where is the {colour} {shape}?" for shape in SHAPES]
    lines += ["how many objects are there?", "what just happened?"]
    return lines


def build_tokenizer():  # -> PreTrainedTokenizerFast (transformers imported lazily)
    """Train the word-level tokenizer on `corpus()` (deterministic, milliseconds) and wrap it."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(r"[.?,;!]"), behavior="isolated")]
    )
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    trainer = trainers.WordLevelTrainer(special_tokens=list(SPECIAL_TOKENS), min_frequency=1)
    tok.train_from_iterator(corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD,
        unk_token=UNK,
        eos_token=EOS,
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in (PAD, UNK, EOS)],
        clean_up_tokenization_spaces=False,
    )


def build_config(
    vocab_size: int,
    token_ids: dict[str, int],
    rope_theta: float = 10000.0,
    patch_size: int = 8,
    merge: int = 2,
):  # -> Qwen2VLConfig
    """The tiny Qwen2-VL architecture: ViT 2 x 96 on `patch_size`^2 x 2 patches, `merge` x `merge` of
    them merged into one LLM token (8x8 patches merged 2x2: one token per 16x16 pixels, as 16x16 patches
    without merge, but the tower sees shapes at twice the resolution), LLM 3 x 128 (4 heads of 32, 2 KV
    heads, M-RoPE sections 4/6/6), tied embeddings. Sized for training on two CPU cores."""
    from transformers import Qwen2VLConfig

    return Qwen2VLConfig(
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": 128,
            "intermediate_size": 384,
            "num_hidden_layers": 3,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 32,
            "max_position_embeddings": 65536,
            "rope_parameters": {"rope_type": "default", "rope_theta": rope_theta, "mrope_section": [4, 6, 6]},
            "tie_word_embeddings": True,
            "pad_token_id": token_ids[PAD],
            "eos_token_id": token_ids[EOS],
            "bos_token_id": None,
        },
        vision_config={
            "depth": 2,
            "embed_dim": 96,
            "hidden_size": 128,
            "mlp_ratio": 2,
            "num_heads": 4,
            "patch_size": patch_size,
            "spatial_merge_size": merge,
            "temporal_patch_size": 2,
            "in_channels": 3,
        },
        image_token_id=token_ids[IMAGE_PAD],
        video_token_id=token_ids[VIDEO_PAD],
        vision_start_token_id=token_ids[VISION_START],
        vision_end_token_id=token_ids[VISION_END],
        tie_word_embeddings=True,
        pad_token_id=token_ids[PAD],
        eos_token_id=token_ids[EOS],
    )


def settings_json() -> dict[str, object]:
    """What goes into the model directory's streamrt.json (read by `load_adapter`)."""
    return {
        "fps": SETTINGS.fps,
        "frames_per_chunk": SETTINGS.frames_per_chunk,
        "frame_size": list(SETTINGS.frame_size or ()),
        "template": {
            "system_prompt": TEMPLATE.system_prompt,
            "system": TEMPLATE.system,
            "user": TEMPLATE.user,
            "assistant_end": TEMPLATE.assistant_end,
            "vision_prefix": TEMPLATE.vision_prefix,
            "vision_suffix": TEMPLATE.vision_suffix,
        },
        "silence_token": SILENCE,
        "eos_token": EOS,
        "user_token": USER,
        "assistant_token": ASSISTANT,
        "normalise": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
    }
