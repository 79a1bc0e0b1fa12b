module.exports = require('./bundle').setup
