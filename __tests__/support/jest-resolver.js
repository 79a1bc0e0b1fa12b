// The toolkit's @actions/* packages are ESM-only and export only an `import` condition, which
// jest's CommonJS runtime never asks for: resolve them with it (jest.config.js compiles them).
module.exports = (request, options) =>
  options.defaultResolver(request, request.startsWith('@actions/') ? { ...options, conditions: ['import', 'node', 'default'] } : options)
