"""Class names and the label -> emoji table shared by training and the app."""

# FER2013's own label order (the `emotion` column of fer2013.csv); FER+ appends contempt.
FER2013_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FERPLUS_CLASSES = FER2013_CLASSES + ("contempt",)

EMOJI = {
    "angry": "😠",
    "disgust": "🤢",
    "fear": "😱",
    "happy": "😄",
    "sad": "😢",
    "surprise": "😲",
    "neutral": "😐",
    "contempt": "😒",
}

# Spellings other datasets use for the same emotions (FER+ column names, Kaggle folder names).
ALIASES = {
    "anger": "angry",
    "disgusted": "disgust",
    "fearful": "fear",
    "happiness": "happy",
    "sadness": "sad",
    "surprised": "surprise",
}


def canonical(name: str) -> str:
    """Return our spelling of an emotion name (case-insensitive, known aliases resolved)."""
    key = name.strip().lower()
    return ALIASES.get(key, key)


def emoji_for(label: str) -> str:
    """Return the emoji for an emotion label."""
    return EMOJI[canonical(label)]
