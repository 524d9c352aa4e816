"""Fetch the freely licensed photographs the default models are trained on (training only).

Source: Debian's desktop-background packages (``apt-get download``, no root needed), which
carry photographs under CC0, CC-BY, CC-BY-SA, GPL-2+ and LGPL-3 (each file's licence is listed in
:data:`PHOTOS` and copied from the package's ``copyright`` file / ``metadata.json``). Every
photograph is decoded once, reduced with a Lanczos filter to a long side of 1024 pixels (which
also removes the mild JPEG artifacts of the original files) and written as a lossless PNG, with a
second copy halved to 512.

The photographs are split once and for all, by name:

* ``train/`` -- used by ``scripts/train_default_prior.py`` and ``scripts/train_default_driftrec.py``;
* ``val/`` -- :data:`VALIDATION`, used only to choose solver settings (start time, η, steps,
  samples); never trained on. The evaluation photographs (scikit-image's ``rocket``, ``camera``,
  ``coins``, ``hubble_deep_field``) are neither.

    python scripts/fetch_photos.py --out runs/photos      # about 220 MB of downloads, 1 minute

``sources.tsv`` in the output records, per file, the package, the original path, the author
and the licence.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import tempfile
from pathlib import Path

#: (package, path inside the package, author, licence) of every photograph used.
PHOTOS: tuple[tuple[str, str, str, str], ...] = tuple(
    (pkg, path, author, lic)
    for pkg, prefix, entries in (
        (
            "lomiri-wallpapers-16.04",
            "usr/share/backgrounds/",
            (
                ("Bridge_by_Sander_Klootwijk.jpg", "Sander Klootwijk", "CC-BY-SA-4.0"),
                ("Dragonfly_by_Bolly.jpg", "Bolly", "CC-BY-SA-4.0"),
                ("Picture_0B_by_freespace.jpg", "Trevor Freespace", "CC-BY-4.0"),
                ("Picture_1A_by_freespace.jpg", "Trevor Freespace", "CC-BY-4.0"),
                ("Wine_by_Jakkub_Mede.jpg", "Jakkub Mede", "CC-BY-SA-4.0"),
                ("aitzgorri_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
                ("analogpattern_by_Peter_Nerlich.jpg", "Peter Nerlich", "CC-BY-SA-4.0"),
                ("free_by_Peter_Nerlich.jpg", "Peter Nerlich", "CC-BY-SA-4.0"),
                ("friends_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
                ("greentock_by_Peter_Nerlich.jpg", "Peter Nerlich", "CC-BY-SA-4.0"),
                ("life_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
                ("picosdeeuropa_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
                ("seeding_by_Clements_Engelhardt.jpg", "Clemens Engelhardt", "CC0-1.0"),
                ("sunset_by_Aitzol_Berasategi.jpg", "Aitzol Berasategi", "CC-BY-4.0"),
            ),
        ),
        (
            "lomiri-wallpapers-20.04",
            "usr/share/backgrounds/",
            (("Kleiber_by_Lukas_Baubkus.jpg", "Lukas Baubkus", "CC-BY-SA-4.0"),),
        ),
        (
            "mate-backgrounds",
            "usr/share/backgrounds/mate/nature/",
            (
                ("Aqua.jpg", "Charles Barbin", "GPL-2+"),
                ("Blinds.jpg", "Lennart Poettering, Andrea Cimitan", "GPL-2+"),
                ("Dune.jpg", "Marco Cogoni, Hylke Bons", "GPL-2+"),
                ("FreshFlower.jpg", "Jens Ansorg", "GPL-2+"),
                ("Garden.jpg", "Charles Barbin", "GPL-2+"),
                ("GreenMeadow.jpg", "Timothy Schellhase, Lapo Calamandrei", "GPL-2+"),
                ("LadyBird.jpg", "Charles Barbin", "GPL-2+"),
                ("RainDrops.jpg", "blackcombwhistler07", "GPL-2+"),
                ("Storm.jpg", "Sergey Nazarov", "GPL-2+"),
                ("TwoWings.jpg", "MATE Backgrounds authors", "GPL-2+"),
                ("Wood.jpg", "MATE Backgrounds authors", "GPL-2+"),
                ("YellowFlower.jpg", "Charles Barbin", "GPL-2+"),
            ),
        ),
        (
            "plasma-workspace-wallpapers",
            "usr/share/wallpapers/",
            (
                ("BytheWater/contents/images/2560x1600.jpg", "Maciej Wiklo", "LGPL-3"),
                ("Grey/contents/images/2560x1600.jpg", "Sigi Sagi", "LGPL-3"),
                ("EveningGlow/contents/images/2560x1600.jpg", "Ian Hex", "LGPL-3"),
                ("FallenLeaf/contents/images/2560x1600.jpg", "Martin Klapetek", "LGPL-3"),
                ("Kite/contents/images/2560x1600.jpg", "Risto Saukonpää", "LGPL-3"),
                ("Path/contents/images/2560x1600.jpg", "Risto Saukonpää", "LGPL-3"),
                ("summer_1am/contents/images/2560x1600.jpg", "Risto Saukonpää", "LGPL-3"),
                ("DarkestHour/contents/images/2560x1600.jpg", "Risto Saukonpää", "LGPL-3"),
                ("OneStandsOut/contents/images/2560x1600.jpg", "Risto Saukonpää", "LGPL-3"),
            ),
        ),
    )
    for name, author, lic in entries
    for path in (prefix + name,)
)

#: Photographs kept out of training; used only to choose solver settings.
VALIDATION: tuple[str, ...] = ("Dragonfly_by_Bolly", "Storm", "EveningGlow", "Picture_1A_by_freespace")

LONG_SIDE = 1024


def stem_of(path: str) -> str:
    """A short unique name: the file stem, or the wallpaper folder for KDE's size-named files."""
    parts = path.split("/")
    return parts[-4] if "contents" in parts else Path(path).stem


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/photos")
    a = p.parse_args()
    from PIL import Image

    out = Path(a.out)
    for split in ("train", "val"):
        (out / split).mkdir(parents=True, exist_ok=True)
    rows = ["file\tsplit\tpackage\tpath\tauthor\tlicence\tsha256_of_original"]
    with tempfile.TemporaryDirectory() as tmp:
        packages = sorted({pkg for pkg, *_ in PHOTOS})
        subprocess.run(["apt-get", "download", *packages], cwd=tmp, check=True)
        for pkg in packages:
            (deb,) = Path(tmp).glob(f"{pkg}_*.deb")
            subprocess.run(["dpkg-deb", "-x", str(deb), str(Path(tmp) / pkg)], check=True)
        for pkg, path, author, lic in PHOTOS:
            src = Path(tmp) / pkg / path
            digest = hashlib.sha256(src.read_bytes()).hexdigest()
            name = stem_of(path)
            split = "val" if name in VALIDATION else "train"
            im = Image.open(src).convert("RGB")
            s = LONG_SIDE / max(im.size)
            big = im.resize((round(im.width * s), round(im.height * s)), Image.LANCZOS, reducing_gap=3.0)
            big.save(out / split / f"{name}.png")
            half = big.resize((big.width // 2, big.height // 2), Image.LANCZOS)
            half.save(out / split / f"{name}_half.png")
            rows.append(f"{name}\t{split}\t{pkg}\t{path}\t{author}\t{lic}\t{digest}")
            print(f"{split:5s} {name:40s} {big.width}x{big.height}  {lic}")
    (out / "sources.tsv").write_text("\n".join(rows) + "\n")
    print(f"wrote {len(PHOTOS)} photographs to {out} (sources.tsv lists authors and licences)")


if __name__ == "__main__":
    main()
