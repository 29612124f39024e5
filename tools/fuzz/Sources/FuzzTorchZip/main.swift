import FuzzSupport
import MoECheckpoint

final class InputOwner {}

// A torch.save archive held in memory, as DCP hands one chunk of a `.distcp` file to TorchArchive.
runFuzzer { bytes in
    try bytes.withUnsafeBytes { buffer in
        let archive = try TorchArchive(buffer, source: "fuzz.pt")
        for entry in archive.entries.values { _ = touchAll(entry) }
        _ = try archive.value().description
        let tensor = try archive.tensor(name: "fuzz", owner: InputOwner())
        _ = touchAll(tensor.bytes)
    }
}
