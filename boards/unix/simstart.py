# The unix board's optional simulations, started at boot by board.py (loaded for it and
# dropped): each is loaded only for a scenario that asks for it, so a station without them
# does not hold their code (~1 KB for rfidsim in the 192K heap test).


def start(board, sc):
    """On `board`: the RFID reader's cards (rfidsim.py) for a scenario that has any; a fast
    clock or a flash check (flashsim.py) for one with "clock" or "flash"."""
    board._rfid = None
    if sc.get("rfid") or sc.get("rfid_control") or any(e[1] == "rfid_tap" for e in sc["timeline"]):
        import rfidsim
        board._rfid = rfidsim.Reader(sc)
    if sc.get("clock") or sc.get("flash"):
        import flashsim
        flashsim.start(board, sc)
