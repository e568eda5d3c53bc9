// Prettier, set to the style the code was written in: single quotes, trailing commas, and
// long lines (printWidth 220 changes the fewest lines: the code keeps one statement per line
// where it reads as one thought). YAML keeps its double quotes.
export default {
  printWidth: 220,
  singleQuote: true,
  trailingComma: 'all',
  overrides: [{ files: ['*.yml', '*.yaml'], options: { singleQuote: false } }],
};
