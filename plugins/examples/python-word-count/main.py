"""`word_count`: counts the words of `text`, returns the `top` most frequent ones."""
import collections
import json
import sys

SPEC = {
    "operators": {
        "word_count": {
            "config_schema": {
                "type": "object",
                "properties": {
                    "text": {"type": "string", "description": "the text to count"},
                    "top": {"type": "integer", "minimum": 1, "default": 3},
                },
                "required": ["text"],
                "additionalProperties": False,
            },
            "deferred": [],
            "secret": [],
        }
    }
}


def emit(message_type, **fields):
    print(json.dumps({"type": message_type, **fields}), flush=True)


def word_count(config, context):
    words = config["text"].lower().split()
    emit("log", level="info", message=f"{context['task_id']}: {len(words)} words")
    if not words:
        print("nothing to count", file=sys.stderr)
        return 1
    emit("xcom", key="total_words", value=len(words))
    top = collections.Counter(words).most_common(config.get("top", 3))
    emit("result", value=[{"word": word, "count": count} for word, count in top])
    return 0


def main(argv):
    if argv[1:] == ["spec"]:
        print(json.dumps(SPEC))
        return 0
    if len(argv) == 3 and argv[1] == "run" and argv[2] == "word_count":
        request = json.load(sys.stdin)
        return word_count(request["config"], request["context"])
    print(f"usage: {argv[0]} spec | run word_count", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
