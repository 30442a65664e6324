"""The DeepID face-recognition net used by every CSAW-HackML-2020 BadNet.

Layer names are the competition's (architecture.py of csaw-hackml/CSAW-HackML-2020), so
weights saved by the competition, by students and by this package line up by name.
"""

# The one home of the input size: every module that shapes pixels takes it from here.
HEIGHT, WIDTH = 55, 47
INPUT_SHAPE = (HEIGHT, WIDTH, 3)  # RGB

# Layer name -> (Keras class, names of the layers feeding it): the whole graph.
GRAPH = {
    "input": ("InputLayer", ()),
    "conv_1": ("Conv2D", ("input",)),
    "pool_1": ("MaxPooling2D", ("conv_1",)),
    "conv_2": ("Conv2D", ("pool_1",)),
    "pool_2": ("MaxPooling2D", ("conv_2",)),
    "conv_3": ("Conv2D", ("pool_2",)),
    "pool_3": ("MaxPooling2D", ("conv_3",)),
    "conv_4": ("Conv2D", ("pool_3",)),
    "flatten_1": ("Flatten", ("pool_3",)),
    "flatten_2": ("Flatten", ("conv_4",)),
    "fc_1": ("Dense", ("flatten_1",)),
    "fc_2": ("Dense", ("flatten_2",)),
    "add_1": ("Add", ("fc_1", "fc_2")),
    "activation_1": ("Activation", ("add_1",)),
    "output": ("Dense", ("activation_1",)),
}


_CONV = {"strides": (1, 1), "padding": "valid", "activation": "relu"}
_POOL = {"pool_size": (2, 2), "padding": "valid"}

# Layer name -> hyperparameters a stored model config must have for that layer. The output
# may end in softmax or in logits: the label (argmax) is the same.
LAYER_CONFIG = {
    "conv_1": {"filters": 20, "kernel_size": (4, 4), **_CONV},
    "pool_1": _POOL,
    "conv_2": {"filters": 40, "kernel_size": (3, 3), **_CONV},
    "pool_2": _POOL,
    "conv_3": {"filters": 60, "kernel_size": (3, 3), **_CONV},
    "pool_3": _POOL,
    "conv_4": {"filters": 80, "kernel_size": (2, 2), **_CONV},
    "fc_1": {"units": 160, "activation": "linear"},
    "fc_2": {"units": 160, "activation": "linear"},
    "activation_1": {"activation": "relu"},
    "output": {"activation": frozenset({"softmax", "linear"})},
}


# What the convolutions and poolings (all 'valid') leave of the input: pool_3 and conv_4.
POOL_3_SHAPE = ((((HEIGHT - 3) // 2 - 2) // 2 - 2) // 2, (((WIDTH - 3) // 2 - 2) // 2 - 2) // 2)
CONV_4_SHAPE = (POOL_3_SHAPE[0] - 1, POOL_3_SHAPE[1] - 1)


def expected_weight_shapes(num_classes):
    """Layer name -> (kernel shape, bias shape) for a DeepID net with num_classes outputs."""
    return {
        "conv_1": ((4, 4, 3, 20), (20,)),
        "conv_2": ((3, 3, 20, 40), (40,)),
        "conv_3": ((3, 3, 40, 60), (60,)),
        "conv_4": ((2, 2, 60, 80), (80,)),
        "fc_1": ((POOL_3_SHAPE[0] * POOL_3_SHAPE[1] * 60, 160), (160,)),  # pool_3: 5x4x60
        "fc_2": ((CONV_4_SHAPE[0] * CONV_4_SHAPE[1] * 80, 160), (160,)),  # conv_4: 4x3x80
        "output": ((160, num_classes), (num_classes,)),
    }


def build_deepid(num_classes):
    """A fresh, untrained DeepID Keras model (imports Keras, so call it only when needed)."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=INPUT_SHAPE, name="input")
    x = layers.Conv2D(20, (4, 4), activation="relu", name="conv_1")(inputs)
    x = layers.MaxPooling2D((2, 2), name="pool_1")(x)
    x = layers.Conv2D(40, (3, 3), activation="relu", name="conv_2")(x)
    x = layers.MaxPooling2D((2, 2), name="pool_2")(x)
    x = layers.Conv2D(60, (3, 3), activation="relu", name="conv_3")(x)
    pool_3 = layers.MaxPooling2D((2, 2), name="pool_3")(x)
    branch_1 = layers.Dense(160, name="fc_1")(layers.Flatten(name="flatten_1")(pool_3))
    x = layers.Conv2D(80, (2, 2), activation="relu", name="conv_4")(pool_3)
    branch_2 = layers.Dense(160, name="fc_2")(layers.Flatten(name="flatten_2")(x))
    x = layers.Activation("relu", name="activation_1")(layers.Add(name="add_1")([branch_1, branch_2]))
    outputs = layers.Dense(num_classes, activation="softmax", name="output")(x)
    return keras.Model(inputs, outputs, name="deepid")
