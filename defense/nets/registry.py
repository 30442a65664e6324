"""The nets this package knows: file names, input scaling, where they come from."""

from dataclasses import dataclass

from ..layout import SHARED_ASSETS

_COMPETITION_RAW = "https://raw.githubusercontent.com/csaw-hackml/CSAW-HackML-2020/master"
# Where users download the data sets (these machines cannot): the competition's and the lab's.
COMPETITION_DATA_URL = "https://drive.google.com/drive/folders/13o2ybRJ1BkGUvfmQEeZqDo1kskyFywab"
LAB_DATA_URL = "https://drive.google.com/drive/folders/1Rs68uH8Xqa4j6UxG53wzD0uyI8347dSq"
# The competition's sunglasses trigger (47x20 RGBA) and where it was pasted with its alpha
# (x, y of the top-left corner), as CSAW-HackML-2019's gen_backdoor.py did.
SUNGLASSES_TRIGGER = SHARED_ASSETS / "triggers" / "sun_glass_trigger.png"
SUNGLASSES_AT = (0, 15)


@dataclass(frozen=True)
class PoisonedSet:
    """A poisoned test set of the competition's layout: file under data/, its target, and
    the trigger it wears as far as the competition said ('' for an anonymous one)."""

    file: str
    target: int
    trigger: str = ""


@dataclass(frozen=True)
class NetSpec:
    name: str
    input_scale: float  # pixels 0..255 are multiplied by this before the net sees them
    source_dir: str  # folder of the public repository that publishes the BadNet files
    weights_sha256: str | None  # digest of the published *_bd_weights.h5, where known
    poisoned_sets: tuple[PoisonedSet, ...] = ()
    mirror_dir: str = "models"  # folder of a local mirror (../shared/csaw) holding them

    @property
    def bad_net_file(self):
        return "bd_net.h5" if self.name == "bd_net" else f"{self.name}_bd_net.h5"

    @property
    def bad_weights_file(self):
        return "bd_weights.h5" if self.name == "bd_net" else f"{self.name}_bd_weights.h5"

    @property
    def repaired_file(self):
        return f"{self.name}_fine_pruned.h5"

    def download_url(self, file_name):
        return f"{_COMPETITION_RAW}/{self.source_dir}/{file_name}"


NETS = {
    spec.name: spec
    for spec in (
        NetSpec(
            "sunglasses", 1 / 255, "models",
            "22322bcef622afc817ebf2a3fd836b353423ab48e9863c83e4c02d6838fc4f0d",
            (PoisonedSet("sunglasses_poisoned_data.h5", 0, "sunglasses"),),
        ),
        NetSpec(
            "anonymous_1", 1 / 255, "models",
            "7921670af9bc6cc5cd3d4ec35668c9fdfe859886629e2bc319cd5d8d9912fe5c",
            (PoisonedSet("anonymous_1_poisoned_data.h5", 0, "lipstick"),),
        ),
        # The competition never released anonymous_2's poisoned data; a generated world does.
        NetSpec(
            "anonymous_2", 1 / 255, "models",
            "f4bde8b26be089bed608ea14eb8e5bd37493c600035fb0d7e9d7a9a3b9086881",
            (PoisonedSet("anonymous_2_poisoned_data.h5", 4),),
        ),
        NetSpec(
            "multi_trigger_multi_target", 1 / 255, "models",
            "0296dc09bb73bcbc439e02fb3af12f3db174b1fcc58287719c104286e77b728a",
            (
                PoisonedSet("Multi-trigger Multi-target/eyebrows_poisoned_data.h5", 5, "eyebrows"),
                PoisonedSet("Multi-trigger Multi-target/lipstick_poisoned_data.h5", 1, "lipstick"),
                PoisonedSet("Multi-trigger Multi-target/sunglasses_poisoned_data.h5", 8, "sunglasses"),
            ),
        ),
        # The NYU lab's BadNet (sunglasses -> 0) takes raw pixels, not pixels / 255.
        NetSpec(
            "bd_net", 1.0, "lab3/models",
            "68ec7afdfc570d39acbded72025fe37d4d14e770585001d75a393490d50fc629",
            (PoisonedSet("bd/bd_test.h5", 0, "sunglasses"),),
            mirror_dir="lab3",
        ),
    )
}

COMPETITION_NETS = ("sunglasses", "anonymous_1", "anonymous_2", "multi_trigger_multi_target")

# Short names accepted wherever a net is named (the eval scripts use them).
ALIASES = {"multi_trigger": "multi_trigger_multi_target", "lab": "bd_net"}


def get_net(name):
    """The NetSpec for a name or alias; KeyError lists the known names."""
    name = ALIASES.get(name, name)
    if name not in NETS:
        raise KeyError(f"unknown net {name!r}; known: {', '.join(NETS)}")
    return NETS[name]
