"""Slack's documented Block Kit limits (docs.slack.dev/reference/block-kit), as a list of what is wrong.

One source for the unit tests (which assert there is nothing) and the fake Slack Web API (which answers
`invalid_blocks` as Slack does), so a card that only goes wrong with real, long, escaped text fails the
engine tests too, not only the renderer's own."""

from __future__ import annotations

from typing import Any

TEXT_LIMITS = {"section": 3000, "header": 150, "context": 3000}
MESSAGE_BLOCKS = 50
VIEW_BLOCKS = 100


def _text(node: Any) -> str:
    return str(node.get("text", "")) if isinstance(node, dict) else ""


def block_problems(blocks: Any, max_blocks: int) -> list[str]:
    """Each problem as Slack words it, with a JSON pointer to the block ("must be less than 3001 characters")."""
    if not isinstance(blocks, list) or not 0 < len(blocks) <= max_blocks:
        return [f"must provide between 1 and {max_blocks} blocks [json-pointer:/blocks]"]
    problems: list[str] = []

    def over(value: str, limit: int, where: str) -> None:
        if len(value) > limit:
            problems.append(f"must be less than {limit + 1} characters [json-pointer:{where}]")

    block_ids = [b["block_id"] for b in blocks if isinstance(b, dict) and "block_id" in b]
    if len(block_ids) != len(set(block_ids)):
        problems.append("block_id must be unique [json-pointer:/blocks]")
    for i, block in enumerate(blocks):
        at = f"/blocks/{i}"
        kind = block.get("type", "")
        over(str(block.get("block_id", "")), 255, f"{at}/block_id")
        if "text" in block:
            over(_text(block["text"]), TEXT_LIMITS.get(kind, 3000), f"{at}/text/text")
        fields = block.get("fields", [])
        if len(fields) > 10:
            problems.append(f"must provide at most 10 items [json-pointer:{at}/fields]")
        for j, field in enumerate(fields):
            over(_text(field), 2000, f"{at}/fields/{j}/text")
        if kind == "context":
            if len(block.get("elements", [])) > 10:
                problems.append(f"must provide at most 10 items [json-pointer:{at}/elements]")
            for j, element in enumerate(block.get("elements", [])):
                over(_text(element), 3000, f"{at}/elements/{j}/text")
        if kind == "actions":
            elements = block.get("elements", [])
            if len(elements) > 25:
                problems.append(f"must provide at most 25 items [json-pointer:{at}/elements]")
            ids = [e.get("action_id") for e in elements]
            if len(ids) != len(set(ids)):
                problems.append(f"action_id must be unique within a block [json-pointer:{at}/elements]")
            for j, element in enumerate(elements):
                where = f"{at}/elements/{j}"
                over(_text(element.get("text")), 75, f"{where}/text/text")
                over(str(element.get("value", "")), 2000, f"{where}/value")
                over(str(element.get("action_id", "")), 255, f"{where}/action_id")
                over(str(element.get("url", "")), 3000, f"{where}/url")
        if kind == "input":
            over(_text(block.get("label")), 2000, f"{at}/label/text")
            over(_text(block.get("hint")), 2000, f"{at}/hint/text")
            element = block.get("element", {})
            if element.get("type") == "plain_text_input":
                limit = int(element.get("max_length", 3000))
                if limit > 3000:
                    problems.append(f"must be at most 3000 [json-pointer:{at}/element/max_length]")
                over(str(element.get("initial_value", "")), limit, f"{at}/element/initial_value")
    return problems


def view_problems(view: Any) -> list[str]:
    """A modal's or Home tab's blocks, and a modal's title, buttons and metadata."""
    if not isinstance(view, dict):
        return ["must be an object [json-pointer:/view]"]
    problems = block_problems(view.get("blocks"), VIEW_BLOCKS)
    for key in ("title", "submit", "close"):
        if key in view and len(_text(view[key])) > 24:
            problems.append(f"must be less than 25 characters [json-pointer:/view/{key}/text]")
    if len(str(view.get("private_metadata", ""))) > 3000:
        problems.append("must be less than 3001 characters [json-pointer:/view/private_metadata]")
    if len(str(view.get("callback_id", ""))) > 255:
        problems.append("must be less than 256 characters [json-pointer:/view/callback_id]")
    return problems
