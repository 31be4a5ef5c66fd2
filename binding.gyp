# node-gyp's view of the build, for prebuildify and `node-gyp rebuild`: one action that runs the
# CMake build (CMakeLists.txt is the single source of truth for sources and flags) and leaves
# build/Release/selective_scan.node.
{
  "targets": [
    {
      "target_name": "selective_scan",
      "type": "none",
      "actions": [
        {
          "action_name": "cmake_build",
          "inputs": ["CMakeLists.txt"],
          "outputs": ["<(module_root_dir)/build/Release/selective_scan.node"],
          "action": ["node", "<(module_root_dir)/scripts/build-native.js"]
        }
      ]
    }
  ]
}
