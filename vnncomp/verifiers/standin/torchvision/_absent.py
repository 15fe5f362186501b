"""What every stand-in submodule answers when something in it is actually used."""


def absent(module: str, name: str, why: str):
    if name.startswith("__"):  # import machinery and introspection probe dunders: answer as a module would
        raise AttributeError(name)
    raise NotImplementedError(f"torchvision.{module}.{name}: this is adcert's torchvision stand-in ({why})")
